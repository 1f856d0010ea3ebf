//! The activity stream: an append-only, totally ordered log of what a user can watch happen —
//! task state changes (questions and pull-request states included), runs starting and ending,
//! pull-request records and transcript events — for the live stream (Server-Sent Events).
//!
//! Each change writes its `activity` row in the transaction that makes the change, so a row
//! exists exactly when its change does. Transcript events stay in `events`; one `transcript`
//! row per appended batch points at the batch's `seq` range, so ingest pays one small insert per
//! transaction, not per event. Ids come from `AUTOINCREMENT`: never reused, and — since one
//! connection serializes writers — increasing in commit order.
//!
//! A position in the stream is a key `(activity id, seq)`: a transcript event is keyed by its
//! row and its `seq`; any other row by `(id, i64::MAX)` (the whole row). Keys are compared as
//! pairs. After its commit, a transaction's rows go to the store's [`ActivitySink`] while writers
//! are still excluded, so the sink sees them in commit order.

use crate::{Result, StoreError, Tx, now_us};
use domain::{RunId, Stage, TaskId};
use rusqlite::params;

/// The `seq` part of the key of a row that is not a transcript batch: after every event.
pub const WHOLE: i64 = i64::MAX;

/// What an activity row is about (the TEXT of its `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    /// The task was created, changed state or was deleted.
    Task,
    /// A run started a turn or ended.
    Run,
    /// The task's pull-request record was written.
    PullRequest,
    /// A batch of transcript events of one run.
    Transcript,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Task => "task",
            ActivityKind::Run => "run",
            ActivityKind::PullRequest => "pull_request",
            ActivityKind::Transcript => "transcript",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "task" => ActivityKind::Task,
            "run" => ActivityKind::Run,
            "pull_request" => ActivityKind::PullRequest,
            "transcript" => ActivityKind::Transcript,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown activity kind {other:?}"
                )));
            }
        })
    }
}

/// One activity row (or, read back after a cursor, the part of it after the cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub id: i64,
    pub task: TaskId,
    pub kind: ActivityKind,
    /// When it was written (microseconds since the epoch).
    pub at_us: i64,
    pub body: ActivityBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActivityBody {
    /// A JSON object describing the change (kinds other than transcript).
    Change(String),
    /// Transcript events of one run as `(seq, JSON text)`, in order.
    Events {
        run: RunId,
        stage: Stage,
        events: Vec<(i64, String)>,
    },
    /// A transcript batch whose text was not kept (nobody was following when it was written):
    /// a follower reads it from the store.
    Unloaded { run: RunId, from: i64, to: i64 },
}

impl Activity {
    /// The key of the last item this row holds.
    pub fn last_key(&self) -> (i64, i64) {
        match &self.body {
            ActivityBody::Change(_) => (self.id, WHOLE),
            ActivityBody::Events { events, .. } => {
                (self.id, events.last().map_or(WHOLE, |(seq, _)| *seq))
            }
            ActivityBody::Unloaded { to, .. } => (self.id, *to),
        }
    }
}

/// Where committed activity goes (the engine's live fan-out).
pub trait ActivitySink: Send + Sync {
    /// Whether anyone might follow `task` live: only then is a transcript batch's text copied
    /// into its activity item.
    fn wants(&self, task: TaskId) -> bool;
    /// The rows one transaction wrote, in order; called right after its commit, before the next
    /// writer can start.
    fn committed(&self, items: Vec<Activity>);
}

/// A recent activity row that is not a transcript batch, with its task's title and project.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentActivityRow {
    pub id: i64,
    pub task: TaskId,
    pub title: String,
    pub project: String,
    pub kind: ActivityKind,
    /// When it was written (microseconds since the epoch).
    pub at_us: i64,
    /// The JSON object describing the change.
    pub payload: String,
}

impl Tx<'_> {
    /// The newest `limit` activity rows other than transcript batches, newest first, of tasks
    /// that still exist — of the projects `member` belongs to when given.
    pub fn recent_activity(
        &self,
        limit: u32,
        member: Option<crate::UserId>,
    ) -> Result<Vec<RecentActivityRow>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT a.id, a.task_id, t.title, p.name, a.kind, a.created_us, a.payload
             FROM activity a JOIN tasks t ON t.id = a.task_id JOIN projects p ON p.id = t.project_id
             WHERE a.kind != 'transcript'
             AND (?2 IS NULL OR t.project_id IN (SELECT project_id FROM memberships WHERE user_id = ?2))
             ORDER BY a.id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit, member.map(|u| u.0)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (id, task, title, project, kind, at_us, payload) = row?;
            Ok(RecentActivityRow {
                id,
                task: TaskId(task),
                title,
                project,
                kind: ActivityKind::parse(&kind)?,
                at_us,
                payload,
            })
        })
        .collect()
    }

    /// Appends an activity row describing a change (`payload`: a JSON object).
    pub(crate) fn record_activity(
        &self,
        task: TaskId,
        kind: ActivityKind,
        payload: serde_json::Value,
    ) -> Result<i64> {
        let payload = payload.to_string();
        let at_us = now_us();
        self.tx
            .prepare_cached(
                "INSERT INTO activity (task_id, kind, payload, created_us) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![task.0, kind.as_str(), payload, at_us])?;
        let id = self.tx.last_insert_rowid();
        self.pending.borrow_mut().push(Activity {
            id,
            task,
            kind,
            at_us,
            body: ActivityBody::Change(payload),
        });
        Ok(id)
    }

    /// Appends the activity row of a batch of transcript events just inserted.
    pub(crate) fn record_transcript(
        &self,
        task: TaskId,
        run: RunId,
        events: &[(i64, String)],
    ) -> Result<()> {
        let (Some(from), Some(to)) = (
            events.iter().map(|(seq, _)| *seq).min(),
            events.iter().map(|(seq, _)| *seq).max(),
        ) else {
            return Ok(());
        };
        let at_us = now_us();
        self.tx
            .prepare_cached(
                "INSERT INTO activity (task_id, kind, payload, run_id, seq_from, seq_to, created_us)
                 VALUES (?1, 'transcript', '{}', ?2, ?3, ?4, ?5)",
            )?
            .execute(params![task.0, run.0, from, to, at_us])?;
        let id = self.tx.last_insert_rowid();
        let wanted = self.sink.is_some_and(|sink| sink.wants(task));
        let body = if wanted {
            let stage: String = self
                .tx
                .prepare_cached("SELECT stage FROM runs WHERE id = ?1")?
                .query_row([run.0], |r| r.get(0))?;
            ActivityBody::Events {
                run,
                stage: parse_stage(&stage)?,
                events: events.to_vec(),
            }
        } else {
            ActivityBody::Unloaded { run, from, to }
        };
        self.pending.borrow_mut().push(Activity {
            id,
            task,
            kind: ActivityKind::Transcript,
            at_us,
            body,
        });
        Ok(())
    }

    /// The id of the newest activity row (0 when there is none).
    pub fn last_activity_id(&self) -> Result<i64> {
        Ok(self
            .tx
            .query_row("SELECT COALESCE(MAX(id), 0) FROM activity", [], |r| {
                r.get(0)
            })?)
    }

    /// Activity strictly after the key `after`, in order (of one task when given), at most
    /// `limit` items (a transcript event counts as one item). A transcript row the cursor is
    /// inside comes back with only its events after the cursor.
    pub fn activity_after(
        &self,
        task: Option<TaskId>,
        after: (i64, i64),
        limit: u32,
    ) -> Result<Vec<Activity>> {
        const SELECT: &str = "SELECT a.id, a.task_id, a.kind, a.payload, a.created_us, a.run_id,
             r.stage, e.seq, e.body
             FROM activity a
             LEFT JOIN runs r ON a.kind = 'transcript' AND r.id = a.run_id
             LEFT JOIN events e ON a.kind = 'transcript' AND e.run_id = a.run_id
                 AND e.seq BETWEEN a.seq_from AND a.seq_to
             WHERE a.id >= ?1 AND (a.id, COALESCE(e.seq, 9223372036854775807)) > (?1, ?2)";
        let sql = match task {
            Some(_) => format!("{SELECT} AND a.task_id = ?4 ORDER BY a.id, e.seq LIMIT ?3"),
            None => format!("{SELECT} ORDER BY a.id, e.seq LIMIT ?3"),
        };
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let map = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        };
        let rows = match task {
            Some(task) => stmt
                .query_map(params![after.0, after.1, limit, task.0], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => stmt
                .query_map(params![after.0, after.1, limit], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        let mut out: Vec<Activity> = Vec::new();
        for (id, task, kind, payload, at_us, run, stage, seq, body) in rows {
            let kind = ActivityKind::parse(&kind)?;
            if kind != ActivityKind::Transcript {
                out.push(Activity {
                    id,
                    task: TaskId(task),
                    kind,
                    at_us,
                    body: ActivityBody::Change(payload),
                });
                continue;
            }
            // A batch whose events are gone (never the case unless the task was deleted).
            let (Some(run), Some(stage), Some(seq), Some(body)) = (run, stage, seq, body) else {
                continue;
            };
            if let Some(Activity {
                id: last,
                body: ActivityBody::Events { events, .. },
                ..
            }) = out.last_mut()
                && *last == id
            {
                events.push((seq, body));
                continue;
            }
            out.push(Activity {
                id,
                task: TaskId(task),
                kind,
                at_us,
                body: ActivityBody::Events {
                    run: RunId(run),
                    stage: parse_stage(&stage)?,
                    events: vec![(seq, body)],
                },
            });
        }
        Ok(out)
    }
}

fn parse_stage(text: &str) -> Result<Stage> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::{Activity, ActivityBody, ActivityKind, ActivitySink, WHOLE};
    use crate::{NewProjectRow, NewRunRow, NewTaskRow, PullRequestRow, Store, StoreError};
    use domain::{RunId, RunStatus, Stage, TaskId, TaskState};
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Recorder {
        want: bool,
        seen: Mutex<Vec<Activity>>,
    }

    impl ActivitySink for Recorder {
        fn wants(&self, _: TaskId) -> bool {
            self.want
        }
        fn committed(&self, items: Vec<Activity>) {
            self.seen.lock().unwrap().extend(items);
        }
    }

    fn store_with_task(want: bool) -> (Store, Arc<Recorder>, TaskId, RunId) {
        let store = Store::open_memory().unwrap();
        let recorder = Arc::new(Recorder {
            want,
            ..Recorder::default()
        });
        store.set_activity_sink(recorder.clone());
        let (task, run) = store
            .write(|tx| {
                let project = tx.insert_project(&NewProjectRow {
                    name: "p",
                    path: "/p",
                    default_branch: "main",
                    settings_json: "{}",
                })?;
                let project = project.id;
                let task = tx.allocate_task_id()?;
                tx.insert_task(&NewTaskRow {
                    pipeline_prompts: None,
                    project_prompts: None,
                    pipeline_def: None,
                    id: task,
                    project_id: project,
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
                let run = tx.insert_run(&NewRunRow {
                    task_id: task,
                    stage: Stage::Plan,
                    iteration: 0,
                    mark: "m",
                })?;
                Ok::<_, StoreError>((task, run))
            })
            .unwrap();
        (store, recorder, task, run)
    }

    fn kinds(items: &[Activity]) -> Vec<(ActivityKind, String)> {
        items
            .iter()
            .map(|a| {
                let detail = match &a.body {
                    ActivityBody::Change(json) => json.clone(),
                    ActivityBody::Events { events, .. } => format!("{} events", events.len()),
                    ActivityBody::Unloaded { from, to, .. } => format!("unloaded {from}..{to}"),
                };
                (a.kind, detail)
            })
            .collect()
    }

    #[test]
    fn each_change_writes_its_activity_row_in_its_own_transaction() {
        let (store, recorder, task, run) = store_with_task(true);
        // A transaction that fails leaves neither the change nor its activity row.
        let failed = store.write(|tx| {
            tx.update_task_state(task, &TaskState::Stopped { stage: Stage::Plan }, 0, 0, 0)?;
            tx.mark_run_started(run, "hash")?;
            tx.append_events(task, run, &[(1, "{}".into())])?;
            Err::<(), _>(StoreError::Corrupt("boom".into()))
        });
        assert!(failed.is_err());
        let all = store
            .read(|tx| tx.activity_after(None, (0, WHOLE), 100))
            .unwrap();
        assert_eq!(
            kinds(&all),
            vec![(
                ActivityKind::Task,
                json!({"change": "created", "state": TaskState::PlanGate, "title": "t"})
                    .to_string()
            )]
        );
        assert_eq!(recorder.seen.lock().unwrap().len(), 1);

        store
            .write(|tx| {
                tx.mark_run_started(run, "hash")?;
                tx.append_events(task, run, &[(1, r#"{"a":1}"#.into()), (2, "{}".into())])?;
                tx.finish_run(run, RunStatus::Completed, None, None)?;
                // The same state again is not a change.
                tx.update_task_state(task, &TaskState::PlanGate, 1, 0, 1)?;
                tx.update_task_state(task, &TaskState::Stopped { stage: Stage::Plan }, 1, 0, 1)?;
                tx.upsert_pull_request(&PullRequestRow {
                    task_id: task,
                    url: "u".into(),
                    title: "t".into(),
                    number: Some(3),
                    branch: "b".into(),
                    base: "main".into(),
                    remote: "origin".into(),
                    head_sha: "abc".into(),
                    merged: false,
                    created_at: 1,
                })
            })
            .unwrap();
        let all = store
            .read(|tx| tx.activity_after(None, (0, WHOLE), 100))
            .unwrap();
        let want = vec![
            (
                ActivityKind::Task,
                json!({"change": "created", "state": TaskState::PlanGate, "title": "t"})
                    .to_string(),
            ),
            (
                ActivityKind::Run,
                format!(
                    r#"{{"change":"started","run":{run},"stage":"plan","status":"running","turn":1}}"#
                ),
            ),
            (ActivityKind::Transcript, "2 events".into()),
            (
                ActivityKind::Run,
                format!(
                    r#"{{"change":"finished","reason":null,"run":{run},"stage":"plan","status":"completed"}}"#
                ),
            ),
            (
                ActivityKind::Task,
                json!({"change": "state", "state": TaskState::Stopped { stage: Stage::Plan }})
                    .to_string(),
            ),
            (
                ActivityKind::PullRequest,
                r#"{"branch":"b","head_sha":"abc","merged":false,"number":3,"url":"u"}"#.into(),
            ),
        ];
        assert_eq!(kinds(&all), want);
        // The sink saw the same rows, in the same order, with the same ids.
        let seen = recorder.seen.lock().unwrap().clone();
        assert_eq!(kinds(&seen), want);
        let ids = |items: &[Activity]| items.iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(ids(&seen), ids(&all));
        assert!(ids(&all).windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reading_after_a_key_resumes_inside_a_batch_and_by_task() {
        let (store, recorder, task, run) = store_with_task(false);
        store
            .write(|tx| {
                tx.append_events(
                    task,
                    run,
                    &[(1, "1".into()), (2, "2".into()), (3, "3".into())],
                )
            })
            .unwrap();
        // Nobody followed: the batch went to the sink without its text.
        assert!(matches!(
            recorder.seen.lock().unwrap().last().unwrap().body,
            ActivityBody::Unloaded { from: 1, to: 3, .. }
        ));
        let all = store
            .read(|tx| tx.activity_after(None, (0, WHOLE), 100))
            .unwrap();
        let batch = all[1].id;
        let after = |key, limit| {
            store
                .read(|tx| tx.activity_after(Some(task), key, limit))
                .unwrap()
        };
        let events = |items: Vec<Activity>| match &items[..] {
            [
                Activity {
                    body: ActivityBody::Events { events, .. },
                    ..
                },
            ] => events.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(events(after((batch, 1), 100)), vec![2, 3]);
        assert_eq!(events(after((batch - 1, WHOLE), 2)), vec![1, 2]);
        assert!(after((batch, 3), 100).is_empty());
        assert!(after((batch, WHOLE), 100).is_empty());
        assert!(
            store
                .read(|tx| tx.activity_after(Some(TaskId(99)), (0, WHOLE), 100))
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.read(|tx| tx.last_activity_id()).unwrap(), batch);
        // Deleting the task removes its activity and leaves one row saying so; ids never repeat.
        store.write(|tx| tx.delete_task(task)).unwrap();
        let left = store
            .read(|tx| tx.activity_after(None, (0, WHOLE), 100))
            .unwrap();
        assert_eq!(
            kinds(&left),
            vec![(ActivityKind::Task, r#"{"change":"deleted"}"#.into())]
        );
        assert!(left[0].id > batch);
    }
}
