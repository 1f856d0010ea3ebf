//! Integration tests of the store against real SQLite files in temp folders: migrations (fresh,
//! upgraded from schema 1, refused when newer), each aggregate's queries, and the rule that a
//! state change and its intents are written in one transaction.

// Helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use domain::{
    BlockReason, DoneReason, Pipeline, PrRounds, ProjectId, RunId, RunStatus, Signal, Stage,
    StageHistory, TaskId, TaskSnapshot, TaskState, Verdict,
};
use rusqlite::Connection;
use store::{
    CommentRow, CommentStatus, Intent, IntentKind, NewComment, NewIntent, NewProjectRow, NewRunRow,
    NewTaskRow, ProjectRow, PullRequestRow, RunRow, Store, StoreError, StoredEvent, TaskRow,
    UnknownIntentKind, now_ms,
};
use tempfile::TempDir;

/// The schema version this build migrates to (the number of migrations).
const LATEST: i64 = 17;

// ---------------------------------------------------------------------------------------------
// Helpers

fn db_path(dir: &Path) -> PathBuf {
    dir.join("atelier.db")
}

/// A fresh store in a temp folder (kept alive by the returned `TempDir`).
fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    (dir, store)
}

/// A second, plain connection to the same file, for looking at the schema and writing rows the
/// store's API cannot write.
fn raw(dir: &Path) -> Connection {
    Connection::open(db_path(dir)).unwrap()
}

fn user_version(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn tables(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn columns(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn add_project(store: &Store, name: &str) -> ProjectRow {
    let path = format!("/repos/{name}");
    store
        .write(|tx| {
            tx.insert_project(&NewProjectRow {
                name,
                path: &path,
                default_branch: "main",
                settings_json: "{}",
            })
        })
        .unwrap()
}

/// Allocates an id and inserts a task with it; `port` tells tasks apart in port queries.
fn add_task(store: &Store, project: ProjectId, state: &TaskState, port: u16) -> TaskId {
    store
        .write(|tx| {
            let id = tx.allocate_task_id()?;
            let key = format!("{id}-task");
            let branch = format!("atelier/{key}");
            tx.insert_task(&NewTaskRow {
                pipeline_prompts: None,
                project_prompts: None,
                pipeline_def: None,
                id,
                project_id: project,
                title: "A task",
                body: "Do it.",
                key: &key,
                branch: &branch,
                base: "main",
                state,
                priority: 0,
                technical: true,
                worktree: "/wt",
                doc_path: "/docs/task.md",
                port,
                pipeline: "standard",
            })?;
            Ok::<_, StoreError>(id)
        })
        .unwrap()
}

fn add_run(store: &Store, task: TaskId, stage: Stage) -> RunId {
    let mark = format!("mark-{task}-{stage}-{}", now_ms());
    store
        .write(|tx| {
            tx.insert_run(&NewRunRow {
                task_id: task,
                stage,
                iteration: 0,
                mark: &mark,
            })
        })
        .unwrap()
}

fn finish(store: &Store, run: RunId, status: RunStatus) {
    store
        .write(|tx| tx.finish_run(run, status, None, None))
        .unwrap();
}

fn pr_row(task: TaskId, number: Option<u64>, head_sha: &str, created_at: i64) -> PullRequestRow {
    PullRequestRow {
        task_id: task,
        url: format!("https://forge.example/pr/{task}"),
        title: format!("Task {task}"),
        number,
        branch: format!("atelier/{task}-task"),
        base: "main".into(),
        remote: "origin".into(),
        head_sha: head_sha.into(),
        merged: false,
        created_at,
    }
}

fn upsert_pr(store: &Store, pr: &PullRequestRow) {
    store.write(|tx| tx.upsert_pull_request(pr)).unwrap();
}

fn comment(task: TaskId, comment_id: u64, status: CommentStatus) -> NewComment<'static> {
    NewComment {
        task_id: task,
        kind: "issue",
        comment_id,
        author: "octocat",
        association: "OWNER",
        body: "@atelier please rename it",
        path: None,
        line: None,
        url: Some("https://forge.example/c"),
        status,
        reason: None,
    }
}

fn task_row(store: &Store, id: TaskId) -> TaskRow {
    store.read(|tx| tx.task(id)).unwrap().unwrap()
}

fn run_row(store: &Store, id: RunId) -> RunRow {
    store.read(|tx| tx.run(id)).unwrap().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Migrations

#[test]
fn a_fresh_database_reaches_the_latest_schema_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let project = add_project(&store, "p");
    drop(store);

    let conn = raw(dir.path());
    assert_eq!(user_version(&conn), LATEST);
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    assert_eq!(
        tables(&conn),
        [
            "activity",
            "api_tokens",
            "audit",
            "events",
            "memberships",
            "outbox",
            "pr_checks",
            "pr_comments",
            "projects",
            "pull_requests",
            "runs",
            "sessions",
            "signals",
            "sqlite_sequence",
            "task_ids",
            "tasks",
            "user_credentials",
            "user_models",
            "users",
            "webhook_deliveries",
        ]
    );
    let counter: i64 = conn
        .query_row("SELECT last FROM task_ids", [], |r| r.get(0))
        .unwrap();
    assert_eq!(counter, 0);
    drop(conn);

    // Opening again applies nothing twice and keeps what was written.
    let store = Store::open_in(dir.path()).unwrap();
    assert_eq!(store.read(|tx| tx.projects()).unwrap(), [project]);
    assert_eq!(user_version(&raw(dir.path())), LATEST);
}

/// Builds `<dir>/atelier.db` at schema version 1, as a version-1 Atelier left it, with one
/// project, task, run, event, intent and pull request.
fn build_version_1_database(dir: &Path) {
    let conn = Connection::open(db_path(dir)).unwrap();
    conn.execute_batch(include_str!("schema_v1.sql")).unwrap();
    conn.execute_batch(
        r#"
INSERT INTO projects (id, name, path, default_branch, settings, created_at)
VALUES (1, 'old', '/repos/old', 'main', '{"max_running":2}', 1000);
INSERT INTO tasks (id, project_id, title, body, key, branch, base, state, state_name, priority,
    technical, worktree, doc_path, port, review_rounds, runs_started, created_at, updated_at)
VALUES (41, 1, 'Old task', 'From before', '41-old-task', 'atelier/41-old-task', 'main',
    '{"state":"awaiting_checks"}', 'awaiting_checks', 2, 1, '/wt/41', '/docs/41.md', 20041, 1, 4,
    1000, 2000);
INSERT INTO runs (id, task_id, stage, status, iteration, turns, session, token_hash, mark,
    pending_input, signal, reason, created_at, started_at, ended_at, spawned_us, exited_us,
    input_tokens, output_tokens, cost_usd)
VALUES (7, 41, 'pr', 'completed', 0, 3, 'sess-7', 'hash-7', 'mark-7', NULL,
    '{"kind":"pr-done","no_changes":false}', NULL, 1100, 1200, 1300, NULL, NULL, 10, 20, 0.5);
INSERT INTO events (run_id, seq, task_id, body, created_at) VALUES (7, 1, 41, '{"e":1}', 1250);
INSERT INTO signals (run_id, task_id, body, created_at)
VALUES (7, 41, '{"kind":"pr-done","no_changes":false}', 1290);
INSERT INTO outbox (id, task_id, kind, idem_key, created_at, attempts, done_at, outcome)
VALUES (1, 41, 'open_pr', 'open_pr:41', 1300, 1, 1400, 'opened');
INSERT INTO pull_requests (task_id, url, branch, base, remote, head_sha, merged, created_at)
VALUES (41, 'file:///prs/41', 'atelier/41-old-task', 'main', 'origin', 'abc123', 0, 1400);
PRAGMA user_version = 1;
"#,
    )
    .unwrap();
}

#[test]
fn a_version_1_database_upgrades_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    build_version_1_database(dir.path());

    let store = Store::open_in(dir.path()).unwrap();

    // The data is still there, read through today's queries.
    assert_eq!(
        store.read(|tx| tx.project_by_name("old")).unwrap(),
        Some(ProjectRow {
            id: ProjectId(1),
            name: "old".into(),
            path: "/repos/old".into(),
            default_branch: "main".into(),
            settings_json: r#"{"max_running":2}"#.into(),
            created_at: 1000,
        })
    );
    let task = task_row(&store, TaskId(41));
    assert_eq!(
        task,
        TaskRow {
            id: TaskId(41),
            project_id: ProjectId(1),
            title: "Old task".into(),
            body: "From before".into(),
            key: "41-old-task".into(),
            branch: "atelier/41-old-task".into(),
            base: "main".into(),
            state: TaskState::AwaitingChecks,
            priority: 2,
            technical: true,
            worktree: Some("/wt/41".into()),
            doc_path: "/docs/41.md".into(),
            port: 20041,
            review_rounds: 1,
            runs_started: 4,
            created_at: 1000,
            updated_at: 2000,
            pipeline: "standard".into(),
            qa_rounds: 0,
            pipeline_def: None,
            pipeline_prompts: None,
            project_prompts: None,
        }
    );
    assert_eq!(
        store.read(|tx| tx.runs_of_task(TaskId(41))).unwrap(),
        [RunRow {
            id: RunId(7),
            task_id: TaskId(41),
            stage: Stage::Pr,
            status: RunStatus::Completed,
            iteration: 0,
            turns: 3,
            session: Some("sess-7".into()),
            mark: "mark-7".into(),
            pending_input: None,
            signal: Some(Signal::PrDone { no_changes: false }),
            reason: None,
            created_at: 1100,
            started_at: Some(1200),
            ended_at: Some(1300),
            spawned_us: None,
            exited_us: None,
            input_tokens: 10,
            output_tokens: 20,
            cost_usd: 0.5,
            // Runs recorded before migration 10 do not know their harness and model.
            harness: None,
            model: None,
            // Nor what the guards record (migration 11).
            start_head: None,
            start_checked: None,
            reviewed_commit: None,
        }]
    );
    assert_eq!(store.read(|tx| tx.last_seq(RunId(7))).unwrap(), 1);
    assert_eq!(store.read(|tx| tx.signal_count(TaskId(41))).unwrap(), 1);
    assert_eq!(
        store.read(|tx| tx.intents_of_task(TaskId(41))).unwrap(),
        [Intent {
            id: 1,
            task_id: TaskId(41),
            kind: Ok(IntentKind::OpenPr),
            idem_key: "open_pr:41".into(),
            attempts: 1,
            done_at: Some(1400),
            outcome: Some("opened".into()),
        }]
    );
    // Columns added later have their defaults.
    assert_eq!(
        store.read(|tx| tx.pull_request(TaskId(41))).unwrap(),
        Some(PullRequestRow {
            task_id: TaskId(41),
            url: "file:///prs/41".into(),
            // Opened before migration 16: with its task's title.
            title: "Old task".into(),
            number: None,
            branch: "atelier/41-old-task".into(),
            base: "main".into(),
            remote: "origin".into(),
            head_sha: "abc123".into(),
            merged: false,
            created_at: 1400,
        })
    );
    assert_eq!(
        store.read(|tx| tx.snapshot(&task)).unwrap(),
        TaskSnapshot {
            qa_rounds: 0,
            state: TaskState::AwaitingChecks,
            review_rounds: 1,
            runs_started: 4,
            owner_technical: true,
            pipeline: Pipeline::standard(),
            live_run: None,
            pr_rounds: PrRounds::default(),
            has_pull_request: true,
            history: StageHistory::default(),
        }
    );
    assert_eq!(store.read(|tx| tx.run_brief(RunId(7))).unwrap(), None);
    assert_eq!(
        store.read(|tx| tx.consecutive_stalls(TaskId(41))).unwrap(),
        0
    );
    assert_eq!(
        store
            .read(|tx| tx.consecutive_infra_failures(TaskId(41)))
            .unwrap(),
        0
    );
    // The tables added later exist (and are empty).
    assert_eq!(store.read(|tx| tx.comments(TaskId(41))).unwrap(), []);
    assert_eq!(store.read(|tx| tx.recent_deliveries(10)).unwrap(), []);
    // The transcript stored before the activity stream existed is in it: one row per run.
    let activity = store
        .read(|tx| tx.activity_after(None, (0, store::WHOLE), 100))
        .unwrap();
    assert_eq!(activity.len(), 1, "{activity:?}");
    assert_eq!(activity[0].task, TaskId(41));
    assert!(matches!(
        &activity[0].body,
        store::ActivityBody::Events { run: RunId(7), events, .. } if events.len() == 1
    ));

    let conn = raw(dir.path());
    assert_eq!(user_version(&conn), LATEST);
    // Events are appended by rowid and indexed by run only (migration 14).
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["events_run"]);
    let (ci_fix_rounds, conflict_rounds): (i64, i64) = conn
        .query_row(
            "SELECT ci_fix_rounds, conflict_rounds FROM tasks WHERE id = 41",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((ci_fix_rounds, conflict_rounds), (0, 0));
    let number_is_null: bool = conn
        .query_row(
            "SELECT number IS NULL FROM pull_requests WHERE task_id = 41",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(number_is_null);
    let (infra, stalled, brief_is_null): (i64, i64, bool) = conn
        .query_row(
            "SELECT infra, stalled, brief IS NULL FROM runs WHERE id = 7",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((infra, stalled, brief_is_null), (0, 0, true));
    let tables = tables(&conn);
    for table in ["pr_comments", "webhook_deliveries", "task_ids"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    assert_eq!(
        columns(&conn, "webhook_deliveries"),
        [
            "id",
            "delivery",
            "event",
            "project_id",
            "outcome",
            "received_at"
        ]
    );
    // The id counter starts at the highest id a task has.
    let counter: i64 = conn
        .query_row("SELECT last FROM task_ids", [], |r| r.get(0))
        .unwrap();
    assert_eq!(counter, 41);
    drop(conn);
    assert_eq!(store.write(|tx| tx.allocate_task_id()).unwrap(), TaskId(42));
}

#[test]
fn a_database_from_a_newer_schema_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(dir.path());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE future (x INTEGER); INSERT INTO future VALUES (7);
             PRAGMA user_version = {};",
            LATEST + 1
        ))
        .unwrap();
    }

    let err = match Store::open_in(dir.path()) {
        Ok(_) => panic!("a database of a newer schema was opened"),
        Err(err) => err,
    };
    match &err {
        StoreError::TooNew {
            path: named,
            found,
            known,
        } => {
            assert_eq!(named, &path);
            assert_eq!((*found, *known), (LATEST + 1, LATEST));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // Nothing was migrated or guessed at.
    let conn = raw(dir.path());
    assert_eq!(user_version(&conn), LATEST + 1);
    assert_eq!(tables(&conn), ["future"]);
}

// ---------------------------------------------------------------------------------------------
// Projects

#[test]
fn projects_are_found_by_id_name_and_path_and_listed_in_order() {
    let (_dir, store) = fresh();
    let before = now_ms();
    let alpha = add_project(&store, "alpha");
    let beta = add_project(&store, "beta");
    assert_eq!(
        alpha,
        ProjectRow {
            id: alpha.id,
            name: "alpha".into(),
            path: "/repos/alpha".into(),
            default_branch: "main".into(),
            settings_json: "{}".into(),
            created_at: alpha.created_at,
        }
    );
    assert!(alpha.created_at >= before && alpha.created_at <= now_ms());
    assert_ne!(alpha.id, beta.id);

    store
        .read(|tx| {
            assert_eq!(tx.project(alpha.id)?, Some(alpha.clone()));
            assert_eq!(tx.project_by_name("beta")?, Some(beta.clone()));
            assert_eq!(tx.project_by_path("/repos/alpha")?, Some(alpha.clone()));
            assert_eq!(tx.project_by_name("gamma")?, None);
            assert_eq!(tx.project_by_path("/repos/gamma")?, None);
            assert_eq!(tx.project(ProjectId(999))?, None);
            assert_eq!(tx.projects()?, [alpha.clone(), beta.clone()]);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    store
        .write(|tx| tx.set_project_settings(beta.id, r#"{"x":1}"#))
        .unwrap();
    assert_eq!(
        store.read(|tx| tx.project(beta.id)).unwrap().unwrap(),
        ProjectRow {
            settings_json: r#"{"x":1}"#.into(),
            ..beta.clone()
        }
    );

    // Names and paths are unique.
    let duplicate = store.write(|tx| {
        tx.insert_project(&NewProjectRow {
            name: "alpha",
            path: "/elsewhere",
            default_branch: "main",
            settings_json: "{}",
        })
    });
    assert!(
        matches!(duplicate, Err(StoreError::Sql(_))),
        "{duplicate:?}"
    );
    assert_eq!(store.read(|tx| tx.projects()).unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Tasks

#[test]
fn task_ids_only_grow_even_after_a_delete_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let project = add_project(&store, "p").id;
    // An id taken but never used (a crash before the row was written) stays taken.
    assert_eq!(store.write(|tx| tx.allocate_task_id()).unwrap(), TaskId(1));
    let second = add_task(&store, project, &TaskState::PlanGate, 20000);
    assert_eq!(second, TaskId(2));
    store.write(|tx| tx.delete_task(second)).unwrap();
    assert_eq!(store.write(|tx| tx.allocate_task_id()).unwrap(), TaskId(3));

    // A row written with a higher id than the counter (by hand, say) pushes it up.
    store
        .write(|tx| {
            tx.insert_task(&NewTaskRow {
                pipeline_prompts: None,
                project_prompts: None,
                pipeline_def: None,
                id: TaskId(10),
                project_id: project,
                title: "t",
                body: "b",
                key: "10-t",
                branch: "atelier/10-t",
                base: "main",
                state: &TaskState::PlanGate,
                priority: 0,
                technical: false,
                worktree: "/w",
                doc_path: "/d",
                port: 20010,
                pipeline: "standard",
            })
        })
        .unwrap();
    assert_eq!(store.write(|tx| tx.allocate_task_id()).unwrap(), TaskId(11));

    // An allocation in a write that fails is not taken.
    let failed = store.write(|tx| {
        tx.allocate_task_id()?;
        Err::<(), _>(StoreError::Corrupt("boom".into()))
    });
    assert!(failed.is_err());

    drop(store);
    let store = Store::open_in(dir.path()).unwrap();
    assert_eq!(store.write(|tx| tx.allocate_task_id()).unwrap(), TaskId(12));
}

#[test]
fn a_task_round_trips_as_a_whole_row_and_lists_newest_first() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let q = add_project(&store, "q").id;
    let state = TaskState::Blocked {
        stage: Stage::Review,
        reason: BlockReason::MaxIterations {
            detail: "3 review rounds".into(),
        },
    };
    let before = now_ms();
    let id = store
        .write(|tx| {
            let id = tx.allocate_task_id()?;
            tx.insert_task(&NewTaskRow {
                // Distinct texts in the last columns: a misnumbered placeholder swaps them.
                pipeline_prompts: Some(r#"{"prompts/plan.md":"Pipeline plan."}"#),
                project_prompts: Some(r#"{"review":"Project review of {{title}}."}"#),
                pipeline_def: None,
                id,
                project_id: p,
                title: "Add a flag",
                body: "A `--dry-run` flag.",
                key: "1-add-a-flag",
                branch: "atelier/1-add-a-flag",
                base: "develop",
                state: &state,
                priority: 5,
                technical: false,
                worktree: "/wt/1",
                doc_path: "/docs/1.md",
                port: 20001,
                pipeline: "yolo",
            })?;
            Ok::<_, StoreError>(id)
        })
        .unwrap();
    let row = task_row(&store, id);
    assert_eq!(
        row,
        TaskRow {
            qa_rounds: 0,
            pipeline_prompts: Some(r#"{"prompts/plan.md":"Pipeline plan."}"#.into()),
            project_prompts: Some(r#"{"review":"Project review of {{title}}."}"#.into()),
            pipeline_def: None,
            id,
            project_id: p,
            title: "Add a flag".into(),
            body: "A `--dry-run` flag.".into(),
            key: "1-add-a-flag".into(),
            branch: "atelier/1-add-a-flag".into(),
            base: "develop".into(),
            state: state.clone(),
            priority: 5,
            technical: false,
            worktree: Some("/wt/1".into()),
            doc_path: "/docs/1.md".into(),
            port: 20001,
            review_rounds: 0,
            runs_started: 0,
            created_at: row.created_at,
            updated_at: row.created_at,
            pipeline: "yolo".into(),
        }
    );
    assert!(row.created_at >= before && row.created_at <= now_ms());
    assert_eq!(
        store.read(|tx| tx.snapshot(&row)).unwrap().pipeline,
        Pipeline::builtin("yolo").unwrap()
    );

    store.write(|tx| tx.clear_worktree(id)).unwrap();
    assert_eq!(task_row(&store, id).worktree, None);

    let second = add_task(&store, p, &TaskState::PlanGate, 20002);
    let other = add_task(&store, q, &TaskState::PlanGate, 20003);
    let ids = |project| -> Vec<TaskId> {
        store
            .read(|tx| tx.tasks(project))
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(ids(None), [other, second, id]);
    assert_eq!(ids(Some(p)), [second, id]);
    assert_eq!(ids(Some(q)), [other]);
    assert_eq!(store.read(|tx| tx.task(TaskId(999))).unwrap(), None);
}

#[test]
fn state_updates_write_state_and_counters_and_tasks_are_found_by_state() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let a = add_task(&store, p, &TaskState::PlanGate, 20001);
    let b = add_task(&store, p, &TaskState::PlanGate, 20002);
    let c = add_task(&store, p, &TaskState::Stopped { stage: Stage::Plan }, 20003);
    let created = task_row(&store, a);

    let running = TaskState::Running {
        stage: Stage::Implement,
    };
    store
        .write(|tx| tx.update_task_state(a, &running, 2, 0, 5))
        .unwrap();
    let updated = task_row(&store, a);
    assert_eq!(
        updated,
        TaskRow {
            state: running.clone(),
            review_rounds: 2,
            runs_started: 5,
            updated_at: updated.updated_at,
            ..created.clone()
        }
    );
    assert!(updated.updated_at >= created.updated_at);
    store
        .write(|tx| tx.update_task_state(c, &running, 0, 0, 1))
        .unwrap();

    let in_state = |name: &str| -> Vec<TaskId> {
        store
            .read(|tx| tx.tasks_in_state(name))
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(in_state("running"), [a, c]);
    assert_eq!(in_state("plan_gate"), [b]);
    assert_eq!(in_state("stopped"), []);

    // Updating a task that does not exist is an error, not a silent no-op.
    let missing = store.write(|tx| tx.update_task_state(TaskId(999), &running, 0, 0, 0));
    assert!(
        matches!(&missing, Err(StoreError::Corrupt(m)) if m.contains("999")),
        "{missing:?}"
    );
}

#[test]
fn ports_in_use_are_those_of_tasks_not_done() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    assert_eq!(
        store.read(|tx| tx.ports_in_use()).unwrap(),
        Vec::<u16>::new()
    );
    add_task(&store, p, &TaskState::PlanGate, 20001);
    let done = add_task(&store, p, &TaskState::PlanGate, 20002);
    add_task(&store, p, &TaskState::Closed, 20003);
    store
        .write(|tx| {
            tx.update_task_state(
                done,
                &TaskState::Done {
                    reason: DoneReason::Merged,
                },
                0,
                0,
                0,
            )
        })
        .unwrap();
    let mut ports = store.read(|tx| tx.ports_in_use()).unwrap();
    ports.sort_unstable();
    assert_eq!(ports, [20001, 20003]);
}

#[test]
fn the_snapshot_carries_the_live_run_pr_rounds_and_the_pull_request() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    store
        .write(|tx| tx.update_task_state(task, &TaskState::AwaitingChecks, 3, 0, 7))
        .unwrap();
    let snapshot = || {
        let row = task_row(&store, task);
        store.read(|tx| tx.snapshot(&row)).unwrap()
    };
    let bare = TaskSnapshot {
        qa_rounds: 0,
        state: TaskState::AwaitingChecks,
        review_rounds: 3,
        runs_started: 7,
        owner_technical: true,
        pipeline: Pipeline::standard(),
        live_run: None,
        pr_rounds: PrRounds::default(),
        has_pull_request: false,
        history: StageHistory::default(),
    };
    assert_eq!(snapshot(), bare);

    let run = add_run(&store, task, Stage::Pr);
    let rounds = PrRounds {
        ci_fixes: 2,
        conflicts: 1,
    };
    store.write(|tx| tx.set_pr_rounds(task, rounds)).unwrap();
    upsert_pr(&store, &pr_row(task, Some(12), "abc", 1));
    assert_eq!(
        snapshot(),
        TaskSnapshot {
            live_run: Some(run),
            pr_rounds: rounds,
            has_pull_request: true,
            ..bare.clone()
        }
    );

    finish(&store, run, RunStatus::Completed);
    assert_eq!(snapshot().live_run, None);

    // The history: a completed implement run, then the latest verdict given.
    let implement = add_run(&store, task, Stage::Implement);
    assert_eq!(snapshot().history, StageHistory::default());
    finish(&store, implement, RunStatus::Completed);
    let history = |last_verdict| StageHistory {
        first_review_verdict: last_verdict,
        implemented: true,
        last_verdict,
    };
    assert_eq!(snapshot().history, history(None));
    for verdict in [Verdict::Ready, Verdict::NeedsWork] {
        let review = add_run(&store, task, Stage::Review);
        let signal = Signal::Verdict {
            verdict,
            reason: None,
        };
        store
            .write(|tx| tx.record_signal(review, task, &signal))
            .unwrap();
        finish(&store, review, RunStatus::Completed);
        assert_eq!(snapshot().history, history(Some(verdict)));
    }
    // A review that ended without a verdict leaves the last one standing.
    let silent = add_run(&store, task, Stage::Review);
    finish(&store, silent, RunStatus::Completed);
    assert_eq!(snapshot().history, history(Some(Verdict::NeedsWork)));
    // With two reviewers, the round's verdict is `ready` only when both said it.
    let round = |first: Verdict, second: Verdict| {
        for (stage, verdict) in [(Stage::Review, first), (Stage::SecondReview, second)] {
            let run = add_run(&store, task, stage);
            let signal = Signal::Verdict {
                verdict,
                reason: None,
            };
            store
                .write(|tx| tx.record_signal(run, task, &signal))
                .unwrap();
            finish(&store, run, RunStatus::Completed);
        }
        let history = snapshot().history;
        (history.first_review_verdict, history.last_verdict)
    };
    use Verdict::{NeedsWork, Ready};
    assert_eq!(round(Ready, NeedsWork), (Some(Ready), Some(NeedsWork)));
    assert_eq!(round(NeedsWork, Ready), (Some(NeedsWork), Some(NeedsWork)));
    assert_eq!(round(Ready, Ready), (Some(Ready), Some(Ready)));
}

#[test]
fn deleting_a_task_removes_everything_recorded_about_it_and_nothing_else() {
    let (dir, store) = fresh();
    let p = add_project(&store, "p").id;

    // Two tasks with one of everything each.
    let populate = |task: TaskId| -> RunId {
        let run = add_run(&store, task, Stage::Pr);
        store
            .write(|tx| {
                tx.append_events(task, run, &[(1, "{}".into()), (2, "{}".into())])?;
                tx.record_signal(run, task, &Signal::PlanReady)?;
                tx.insert_intent(&NewIntent {
                    task_id: task,
                    kind: IntentKind::OpenPr,
                    idem_key: &format!("open_pr:{task}"),
                })?;
                tx.upsert_pull_request(&pr_row(task, Some(task.0 as u64), "sha", 1))?;
                tx.insert_comment(&comment(task, 1, CommentStatus::Pending))?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        run
    };
    let doomed = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    let kept = add_task(&store, p, &TaskState::AwaitingChecks, 20002);
    let doomed_run = populate(doomed);
    let kept_run = populate(kept);

    store.write(|tx| tx.delete_task(doomed)).unwrap();

    store
        .read(|tx| {
            assert_eq!(tx.task(doomed)?, None);
            assert_eq!(tx.runs_of_task(doomed)?, []);
            assert_eq!(tx.run(doomed_run)?, None);
            assert_eq!(tx.event_count(doomed_run)?, 0);
            assert_eq!(tx.signal_count(doomed)?, 0);
            assert_eq!(tx.intents_of_task(doomed)?, []);
            assert_eq!(tx.pull_request(doomed)?, None);
            assert_eq!(tx.comments(doomed)?, []);
            assert_eq!(tx.pr_rounds(doomed)?, PrRounds::default());

            assert!(tx.task(kept)?.is_some());
            assert_eq!(tx.runs_of_task(kept)?.len(), 1);
            assert_eq!(tx.event_count(kept_run)?, 2);
            assert_eq!(tx.signal_count(kept)?, 1);
            assert_eq!(tx.intents_of_task(kept)?.len(), 1);
            assert!(tx.pull_request(kept)?.is_some());
            assert_eq!(tx.comments(kept)?.len(), 1);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    // The raw tables hold nothing of the deleted task either.
    let conn = raw(dir.path());
    for table in [
        "events",
        "signals",
        "runs",
        "outbox",
        "pull_requests",
        "pr_comments",
    ] {
        let left: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE task_id = ?1"),
                [doomed.0],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "{table}");
    }
}

#[test]
fn a_pull_request_upsert_keeps_its_creation_and_round_trips_its_number() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    assert_eq!(store.read(|tx| tx.pull_request(task)).unwrap(), None);
    assert_eq!(store.read(|tx| tx.pull_request_count(task)).unwrap(), 0);

    let local = pr_row(task, None, "aaa", 1000);
    upsert_pr(&store, &local);
    assert_eq!(
        store.read(|tx| tx.pull_request(task)).unwrap(),
        Some(local.clone())
    );

    // A second upsert updates url, head, merged and number, but keeps when it was created (and
    // the branch, base and remote it was opened with).
    let hosted = PullRequestRow {
        url: "https://forge.example/pr/77".into(),
        number: Some(77),
        head_sha: "bbb".into(),
        merged: true,
        created_at: 5000,
        branch: "other".into(),
        base: "other".into(),
        remote: "other".into(),
        ..local.clone()
    };
    upsert_pr(&store, &hosted);
    assert_eq!(
        store.read(|tx| tx.pull_request(task)).unwrap(),
        Some(PullRequestRow {
            url: "https://forge.example/pr/77".into(),
            number: Some(77),
            head_sha: "bbb".into(),
            merged: true,
            ..local.clone()
        })
    );
    assert_eq!(store.read(|tx| tx.pull_request_count(task)).unwrap(), 1);

    // A number as large as a forge may hand out survives the INTEGER column.
    let big = PullRequestRow {
        number: Some(u32::MAX as u64 + 1),
        ..local.clone()
    };
    upsert_pr(&store, &big);
    assert_eq!(
        store
            .read(|tx| tx.pull_request(task))
            .unwrap()
            .unwrap()
            .number,
        Some(u32::MAX as u64 + 1)
    );
}

// ---------------------------------------------------------------------------------------------
// Runs

#[test]
fn a_new_run_is_queued_with_nothing_recorded_yet() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::PlanGate, 20001);
    let before = now_ms();
    let id = store
        .write(|tx| {
            tx.insert_run(&NewRunRow {
                task_id: task,
                stage: Stage::Review,
                iteration: 2,
                mark: "mark-1",
            })
        })
        .unwrap();
    let row = run_row(&store, id);
    assert_eq!(
        row,
        RunRow {
            id,
            task_id: task,
            stage: Stage::Review,
            status: RunStatus::Queued,
            iteration: 2,
            turns: 0,
            session: None,
            mark: "mark-1".into(),
            pending_input: None,
            signal: None,
            reason: None,
            created_at: row.created_at,
            started_at: None,
            ended_at: None,
            spawned_us: None,
            exited_us: None,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            harness: None,
            model: None,
            start_head: None,
            start_checked: None,
            reviewed_commit: None,
        }
    );
    assert!(row.created_at >= before && row.created_at <= now_ms());
    assert_eq!(store.read(|tx| tx.run(RunId(999))).unwrap(), None);
    assert_eq!(
        store
            .read(|tx| tx.runs_with_status(RunStatus::Queued))
            .unwrap(),
        std::slice::from_ref(&row)
    );
    assert_eq!(store.read(|tx| tx.queued_runs()).unwrap(), [(row, p)]);
}

/// A long-lived process handed from an ended run to the nudge run continuing its session keeps
/// its token: the new run takes it over, the ended run no longer answers to it. A running run's
/// token is never taken.
#[test]
fn a_started_run_takes_over_the_token_of_an_ended_run() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::PlanGate, 20001);
    let first = add_run(&store, task, Stage::Implement);
    assert!(
        store
            .write(|tx| tx.mark_run_started(first, "kept"))
            .unwrap()
    );
    let busy = add_run(&store, task, Stage::Implement);
    assert!(
        store.write(|tx| tx.mark_run_started(busy, "kept")).is_err(),
        "a running run's token cannot be taken"
    );
    store
        .write(|tx| tx.finish_run(first, RunStatus::Completed, None, Some(1)))
        .unwrap();
    let nudge = add_run(&store, task, Stage::Implement);
    assert!(
        store
            .write(|tx| tx.mark_run_started(nudge, "kept"))
            .unwrap()
    );
    let holder = store.read(|tx| tx.run_by_token_hash("kept")).unwrap();
    assert_eq!(holder.map(|r| r.id), Some(nudge));
}

#[test]
fn a_run_is_marked_started_only_while_queued() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::PlanGate, 20001);
    let run = add_run(&store, task, Stage::Plan);

    assert!(
        store
            .write(|tx| tx.mark_run_started(run, "hash-1"))
            .unwrap()
    );
    let started = run_row(&store, run);
    assert_eq!(started.status, RunStatus::Running);
    assert_eq!(started.turns, 1);
    let first_start = started.started_at.expect("started_at set");
    assert_eq!(
        store.read(|tx| tx.run_by_token_hash("hash-1")).unwrap(),
        Some(started.clone())
    );
    assert_eq!(store.read(|tx| tx.running_counts()).unwrap(), [(p, 1)]);

    // Running already: refused, nothing changes.
    assert!(
        !store
            .write(|tx| tx.mark_run_started(run, "hash-2"))
            .unwrap()
    );
    assert_eq!(run_row(&store, run), started);

    // The dispatcher records the harness and the model the agent is started with.
    store
        .write(|tx| tx.set_run_agent(run, "codex", Some("gpt-5")))
        .unwrap();
    let recorded = run_row(&store, run);
    assert_eq!(
        (recorded.harness.as_deref(), recorded.model.as_deref()),
        (Some("codex"), Some("gpt-5"))
    );
    store
        .write(|tx| tx.set_run_agent(run, "scripted", None))
        .unwrap();
    let started = run_row(&store, run);
    assert_eq!(
        (started.harness.as_deref(), started.model.as_deref()),
        (Some("scripted"), None)
    );

    // Waiting for input, then resumed: the next turn starts, keeping the first start time.
    store
        .write(|tx| tx.finish_run(run, RunStatus::NeedsInput, None, Some(42)))
        .unwrap();
    assert!(
        !store
            .write(|tx| tx.mark_run_started(run, "hash-2"))
            .unwrap()
    );
    store
        .write(|tx| tx.queue_resume(run, "the answer"))
        .unwrap();
    let queued = run_row(&store, run);
    assert_eq!(
        (
            queued.status,
            queued.pending_input.as_deref(),
            queued.ended_at
        ),
        (RunStatus::Queued, Some("the answer"), None)
    );
    assert!(
        store
            .write(|tx| tx.mark_run_started(run, "hash-2"))
            .unwrap()
    );
    let resumed = run_row(&store, run);
    assert_eq!(
        (resumed.status, resumed.turns, resumed.started_at),
        (RunStatus::Running, 2, Some(first_start))
    );
    assert_eq!(resumed.exited_us, Some(42));
    // The token of the earlier turn no longer finds the run.
    assert_eq!(
        store.read(|tx| tx.run_by_token_hash("hash-1")).unwrap(),
        None
    );

    // Stopped: refused for good.
    store
        .write(|tx| tx.finish_run(run, RunStatus::Stopped, Some("by user"), None))
        .unwrap();
    assert!(
        !store
            .write(|tx| tx.mark_run_started(run, "hash-3"))
            .unwrap()
    );
    let stopped = run_row(&store, run);
    assert_eq!(
        (stopped.status, stopped.reason.as_deref(), stopped.exited_us),
        (RunStatus::Stopped, Some("by user"), Some(42))
    );
    assert!(stopped.ended_at.is_some());
    assert_eq!(store.read(|tx| tx.running_counts()).unwrap(), []);
}

#[test]
fn a_signal_is_logged_and_becomes_the_runs_latest() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::PlanGate, 20001);
    let run = add_run(&store, task, Stage::Review);
    let verdict = Signal::Verdict {
        verdict: Verdict::NeedsWork,
        reason: Some("tests missing".into()),
    };
    store
        .write(|tx| {
            tx.record_signal(run, task, &Signal::PlanReady)?;
            tx.record_signal(run, task, &verdict)
        })
        .unwrap();
    assert_eq!(run_row(&store, run).signal, Some(verdict));
    assert_eq!(store.read(|tx| tx.signal_count(task)).unwrap(), 2);
}

#[test]
fn the_live_run_is_the_latest_queued_running_or_waiting_one() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::PlanGate, 20001);
    let live = || store.read(|tx| tx.live_run(task)).unwrap().map(|r| r.id);
    assert_eq!(live(), None);

    let first = add_run(&store, task, Stage::Plan);
    assert_eq!(live(), Some(first));
    store.write(|tx| tx.mark_run_started(first, "h1")).unwrap();
    assert_eq!(live(), Some(first));
    finish(&store, first, RunStatus::NeedsInput);
    assert_eq!(live(), Some(first));
    finish(&store, first, RunStatus::Completed);
    assert_eq!(live(), None);

    let second = add_run(&store, task, Stage::Implement);
    assert_eq!(live(), Some(second));
    for status in [
        RunStatus::Failed,
        RunStatus::Stopped,
        RunStatus::Interrupted,
    ] {
        finish(&store, second, status);
        assert_eq!(live(), None, "{status:?}");
    }
}

#[test]
fn finished_runs_of_a_stage_do_not_count_infrastructure_failures() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::PlanGate, 20001);
    let count = |stage| {
        store
            .read(|tx| tx.finished_runs_of_stage(task, stage))
            .unwrap()
    };
    // One run per status, all of the review stage.
    for status in RunStatus::ALL {
        let run = add_run(&store, task, Stage::Review);
        if status != RunStatus::Queued {
            finish(&store, run, status);
        }
    }
    // completed, failed, stopped, needs_input
    assert_eq!(count(Stage::Review), 4);
    assert_eq!(count(Stage::Plan), 0);

    // A failed run lost to the infrastructure is retried as the same iteration.
    let lost = add_run(&store, task, Stage::Review);
    finish(&store, lost, RunStatus::Failed);
    store.write(|tx| tx.mark_run_infra(lost)).unwrap();
    assert_eq!(count(Stage::Review), 4);
    assert_eq!(
        store
            .read(|tx| tx.consecutive_infra_failures(task))
            .unwrap(),
        1
    );

    // Another task's runs are not counted.
    let other = add_task(&store, p, &TaskState::PlanGate, 20002);
    let run = add_run(&store, other, Stage::Review);
    finish(&store, run, RunStatus::Completed);
    assert_eq!(count(Stage::Review), 4);
}

#[test]
fn a_run_brief_round_trips() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    let run = add_run(&store, task, Stage::Pr);
    assert_eq!(store.read(|tx| tx.run_brief(run)).unwrap(), None);
    store
        .write(|tx| tx.set_run_brief(run, "Checks failed: `lint`.\nFix them."))
        .unwrap();
    assert_eq!(
        store.read(|tx| tx.run_brief(run)).unwrap().as_deref(),
        Some("Checks failed: `lint`.\nFix them.")
    );
    assert_eq!(store.read(|tx| tx.run_brief(RunId(999))).unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Events

#[test]
fn events_have_a_per_run_monotonic_seq() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::PlanGate, 20001);
    let plan = add_run(&store, task, Stage::Plan);
    let implement = add_run(&store, task, Stage::Implement);
    assert_eq!(store.read(|tx| tx.last_seq(plan)).unwrap(), 0);

    let body = |n: i64| format!(r#"{{"n":{n}}}"#);
    store
        .write(|tx| {
            tx.append_events(task, plan, &[(1, body(1)), (2, body(2)), (3, body(3))])?;
            // Each run counts from 1 on its own.
            tx.append_events(task, implement, &[(1, body(4)), (2, body(5))])
        })
        .unwrap();
    assert_eq!(store.read(|tx| tx.last_seq(plan)).unwrap(), 3);
    assert_eq!(store.read(|tx| tx.last_seq(implement)).unwrap(), 2);
    assert_eq!(store.read(|tx| tx.event_count(plan)).unwrap(), 3);

    // A seq already used in the run is refused, and the batch it came in leaves nothing.
    let reused = store.write(|tx| tx.append_events(task, plan, &[(4, body(6)), (3, body(7))]));
    assert!(matches!(reused, Err(StoreError::Sql(_))), "{reused:?}");
    assert_eq!(store.read(|tx| tx.last_seq(plan)).unwrap(), 3);

    let event = |run, stage, seq: i64, n| StoredEvent {
        run,
        stage,
        seq,
        json: body(n),
    };
    // Read in (run, seq) order after a cursor, a page at a time.
    assert_eq!(
        store
            .read(|tx| tx.task_events_after(task, (RunId(0), 0), 2))
            .unwrap(),
        [
            event(plan, Stage::Plan, 1, 1),
            event(plan, Stage::Plan, 2, 2)
        ]
    );
    assert_eq!(
        store
            .read(|tx| tx.task_events_after(task, (plan, 2), 10))
            .unwrap(),
        [
            event(plan, Stage::Plan, 3, 3),
            event(implement, Stage::Implement, 1, 4),
            event(implement, Stage::Implement, 2, 5),
        ]
    );
    assert_eq!(
        store
            .read(|tx| tx.task_events_after(task, (implement, 2), 10))
            .unwrap(),
        []
    );
}

// ---------------------------------------------------------------------------------------------
// Outbox

#[test]
fn an_intent_is_recorded_once_per_idempotency_key() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(
        &store,
        p,
        &TaskState::AwaitingMerge { merge_error: None },
        20001,
    );
    let merge = NewIntent {
        task_id: task,
        kind: IntentKind::MergePr,
        idem_key: "merge_pr:1:abc",
    };
    assert!(store.write(|tx| tx.insert_intent(&merge)).unwrap());
    assert!(!store.write(|tx| tx.insert_intent(&merge)).unwrap());
    // The key alone decides, whatever the kind.
    assert!(
        !store
            .write(|tx| tx.insert_intent(&NewIntent {
                kind: IntentKind::RemoveWorkspace,
                ..merge.clone()
            }))
            .unwrap()
    );
    let intents = store.read(|tx| tx.intents_of_task(task)).unwrap();
    assert_eq!(
        intents,
        [Intent {
            id: intents[0].id,
            task_id: task,
            kind: Ok(IntentKind::MergePr),
            idem_key: "merge_pr:1:abc".into(),
            attempts: 0,
            done_at: None,
            outcome: None,
        }]
    );
}

#[test]
fn pending_intents_are_those_without_an_outcome_oldest_first() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let a = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    let b = add_task(&store, p, &TaskState::AwaitingChecks, 20002);
    store
        .write(|tx| {
            for (task, kind, key) in [
                (a, IntentKind::OpenPr, "open_pr:a"),
                (b, IntentKind::OpenPr, "open_pr:b"),
                (a, IntentKind::RemoveWorkspace, "remove_workspace:a"),
            ] {
                tx.insert_intent(&NewIntent {
                    task_id: task,
                    kind,
                    idem_key: key,
                })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let keys =
        |intents: Vec<Intent>| -> Vec<String> { intents.into_iter().map(|i| i.idem_key).collect() };
    let pending = store.read(|tx| tx.pending_intents()).unwrap();
    assert_eq!(
        keys(pending.clone()),
        ["open_pr:a", "open_pr:b", "remove_workspace:a"]
    );

    let first = pending[0].id;
    store
        .write(|tx| {
            tx.intent_attempted(first)?;
            tx.intent_attempted(first)?;
            tx.complete_intent(first, "opened https://forge.example/pr/1")
        })
        .unwrap();
    assert_eq!(
        keys(store.read(|tx| tx.pending_intents()).unwrap()),
        ["open_pr:b", "remove_workspace:a"]
    );
    let done = store.read(|tx| tx.intents_of_task(a)).unwrap();
    assert_eq!(
        done[0],
        Intent {
            id: first,
            task_id: a,
            kind: Ok(IntentKind::OpenPr),
            idem_key: "open_pr:a".into(),
            attempts: 2,
            done_at: done[0].done_at,
            outcome: Some("opened https://forge.example/pr/1".into()),
        }
    );
    assert!(done[0].done_at.is_some());
    // A completed key is still taken: the intent is not recorded again.
    assert!(
        !store
            .write(|tx| tx.insert_intent(&NewIntent {
                task_id: a,
                kind: IntentKind::OpenPr,
                idem_key: "open_pr:a",
            }))
            .unwrap()
    );
}

#[test]
fn an_unknown_intent_kind_is_reported_on_its_row_without_hiding_the_others() {
    let (dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    store
        .write(|tx| {
            tx.insert_intent(&NewIntent {
                task_id: task,
                kind: IntentKind::OpenPr,
                idem_key: "open_pr:1",
            })
        })
        .unwrap();
    // A newer Atelier wrote a kind this one does not know.
    raw(dir.path())
        .execute(
            "INSERT INTO outbox (task_id, kind, idem_key, created_at)
             VALUES (?1, 'launch_rocket', 'launch_rocket:1', 0)",
            [task.0],
        )
        .unwrap();
    store
        .write(|tx| {
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
        .map(|i| (i.idem_key, i.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("open_pr:1".to_string(), Ok(IntentKind::OpenPr)),
            (
                "launch_rocket:1".to_string(),
                Err(UnknownIntentKind("launch_rocket".into()))
            ),
            (
                "remove_workspace:1".to_string(),
                Ok(IntentKind::RemoveWorkspace)
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Following pull requests up

#[test]
fn pr_rounds_default_to_zero_and_round_trip() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    assert_eq!(
        store.read(|tx| tx.pr_rounds(task)).unwrap(),
        PrRounds::default()
    );
    let rounds = PrRounds {
        ci_fixes: 3,
        conflicts: 2,
    };
    store.write(|tx| tx.set_pr_rounds(task, rounds)).unwrap();
    assert_eq!(store.read(|tx| tx.pr_rounds(task)).unwrap(), rounds);
    // Rounds live beside the task's state: a state update leaves them alone.
    store
        .write(|tx| tx.update_task_state(task, &TaskState::AwaitingChecks, 1, 0, 1))
        .unwrap();
    assert_eq!(store.read(|tx| tx.pr_rounds(task)).unwrap(), rounds);
    // A task that does not exist has none.
    assert_eq!(
        store.read(|tx| tx.pr_rounds(TaskId(999))).unwrap(),
        PrRounds::default()
    );
}

#[test]
fn a_comment_is_recorded_once_as_a_whole_row() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    let review_comment = NewComment {
        task_id: task,
        kind: "review_comment",
        comment_id: 9_000_000_001,
        author: "reviewer",
        association: "MEMBER",
        body: "@atelier this can overflow",
        path: Some("src/lib.rs"),
        line: Some(42),
        url: Some("https://forge.example/c/1"),
        status: CommentStatus::Pending,
        reason: None,
    };
    let before = now_ms();
    assert!(
        store
            .write(|tx| tx.insert_comment(&review_comment))
            .unwrap()
    );
    // Seen again (a webhook and a poll both reported it): not recorded twice, not changed.
    assert!(
        !store
            .write(|tx| tx.insert_comment(&NewComment {
                body: "edited",
                status: CommentStatus::Ignored,
                ..review_comment.clone()
            }))
            .unwrap()
    );
    // The same id under another kind is another comment.
    let issue = NewComment {
        kind: "issue",
        status: CommentStatus::Ignored,
        reason: Some("untrusted author"),
        path: None,
        line: None,
        ..review_comment.clone()
    };
    assert!(store.write(|tx| tx.insert_comment(&issue)).unwrap());

    let comments = store.read(|tx| tx.comments(task)).unwrap();
    let received_at = comments[0].received_at;
    assert!(received_at >= before && received_at <= now_ms());
    assert_eq!(
        comments,
        [
            CommentRow {
                task_id: task,
                kind: "review_comment".into(),
                comment_id: 9_000_000_001,
                author: "reviewer".into(),
                association: "MEMBER".into(),
                body: "@atelier this can overflow".into(),
                path: Some("src/lib.rs".into()),
                line: Some(42),
                url: Some("https://forge.example/c/1".into()),
                status: CommentStatus::Pending,
                reason: None,
                run_id: None,
                acknowledged: false,
                received_at,
            },
            CommentRow {
                task_id: task,
                kind: "issue".into(),
                comment_id: 9_000_000_001,
                author: "reviewer".into(),
                association: "MEMBER".into(),
                body: "@atelier this can overflow".into(),
                path: None,
                line: None,
                url: Some("https://forge.example/c/1".into()),
                status: CommentStatus::Ignored,
                reason: Some("untrusted author".into()),
                run_id: None,
                acknowledged: false,
                received_at: comments[1].received_at,
            },
        ]
    );
}

#[test]
fn comments_go_from_pending_to_taken_to_acknowledged_and_answered() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    let other = add_task(&store, p, &TaskState::AwaitingChecks, 20002);
    store
        .write(|tx| {
            tx.insert_comment(&comment(task, 1, CommentStatus::Pending))?;
            tx.insert_comment(&NewComment {
                reason: Some("no mention"),
                ..comment(task, 2, CommentStatus::Ignored)
            })?;
            tx.insert_comment(&comment(task, 3, CommentStatus::Pending))?;
            tx.insert_comment(&comment(other, 4, CommentStatus::Pending))
        })
        .unwrap();
    let ids =
        |rows: Vec<CommentRow>| -> Vec<u64> { rows.into_iter().map(|c| c.comment_id).collect() };
    let pending = || ids(store.read(|tx| tx.pending_comments(task)).unwrap());
    let unacknowledged = || ids(store.read(|tx| tx.unacknowledged_comments(task)).unwrap());
    let unanswered = || ids(store.read(|tx| tx.unanswered_comments(task)).unwrap());

    assert_eq!(pending(), [1, 3]);
    assert_eq!(unacknowledged(), [1, 3]);
    assert_eq!(unanswered(), Vec::<u64>::new());

    // Acknowledged on the forge while it waits.
    store
        .write(|tx| tx.mark_acknowledged(task, "issue", 1))
        .unwrap();
    assert_eq!(unacknowledged(), [3]);

    // A run takes every pending comment of the task (not the ignored one, not another task's).
    let run = add_run(&store, task, Stage::Pr);
    assert_eq!(
        store
            .write(|tx| tx.take_pending_comments(task, run))
            .unwrap(),
        2
    );
    assert_eq!(pending(), Vec::<u64>::new());
    let carried = store.read(|tx| tx.comments_of_run(run)).unwrap();
    assert_eq!(ids(carried.clone()), [1, 3]);
    assert!(
        carried
            .iter()
            .all(|c| c.status == CommentStatus::Taken && c.run_id == Some(run))
    );
    assert_eq!(
        store.read(|tx| tx.pending_comments(other)).unwrap().len(),
        1
    );
    // Taken but not acknowledged yet still counts; nothing to take the second time.
    assert_eq!(unacknowledged(), [3]);
    assert_eq!(
        store
            .write(|tx| tx.take_pending_comments(task, run))
            .unwrap(),
        0
    );

    // Answered only once the run has ended.
    assert_eq!(unanswered(), Vec::<u64>::new());
    store.write(|tx| tx.mark_run_started(run, "h")).unwrap();
    assert_eq!(unanswered(), Vec::<u64>::new());
    finish(&store, run, RunStatus::Completed);
    assert_eq!(unanswered(), [1, 3]);
    store.write(|tx| tx.mark_replied(task, "issue", 1)).unwrap();
    assert_eq!(unanswered(), [3]);
    store
        .write(|tx| {
            tx.mark_acknowledged(task, "issue", 3)?;
            tx.mark_replied(task, "issue", 3)
        })
        .unwrap();
    assert_eq!(unanswered(), Vec::<u64>::new());
    assert_eq!(unacknowledged(), Vec::<u64>::new());
    assert!(
        store
            .read(|tx| tx.comments(task))
            .unwrap()
            .iter()
            .filter(|c| c.status == CommentStatus::Taken)
            .all(|c| c.acknowledged)
    );
}

#[test]
fn tasks_are_found_by_pr_number_and_head_sha_within_their_project() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let q = add_project(&store, "q").id;
    let a = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    let b = add_task(&store, p, &TaskState::AwaitingChecks, 20002);
    let c = add_task(&store, q, &TaskState::AwaitingChecks, 20003);
    let local = add_task(&store, p, &TaskState::AwaitingChecks, 20004);
    upsert_pr(&store, &pr_row(a, Some(5), "same", 1));
    upsert_pr(&store, &pr_row(b, Some(6), "same", 1));
    // Another project may have a pull request with the same number and head.
    upsert_pr(&store, &pr_row(c, Some(5), "same", 1));
    upsert_pr(&store, &pr_row(local, None, "own", 1));

    store
        .read(|tx| {
            assert_eq!(tx.task_by_pr_number(p, 5)?, Some(a));
            assert_eq!(tx.task_by_pr_number(p, 6)?, Some(b));
            assert_eq!(tx.task_by_pr_number(q, 5)?, Some(c));
            assert_eq!(tx.task_by_pr_number(q, 6)?, None);
            assert_eq!(tx.task_by_pr_number(p, 7)?, None);
            let mut same = tx.tasks_by_head_sha(p, "same")?;
            same.sort();
            assert_eq!(same, [a, b]);
            assert_eq!(tx.tasks_by_head_sha(q, "same")?, [c]);
            assert_eq!(tx.tasks_by_head_sha(p, "own")?, [local]);
            assert_eq!(tx.tasks_by_head_sha(p, "nope")?, []);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn tasks_to_follow_have_an_unmerged_pull_request_and_are_not_done() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let open = add_task(&store, p, &TaskState::AwaitingChecks, 20001);
    let merged = add_task(
        &store,
        p,
        &TaskState::AwaitingMerge { merge_error: None },
        20002,
    );
    let done = add_task(&store, p, &TaskState::AwaitingChecks, 20003);
    let _no_pr = add_task(&store, p, &TaskState::Running { stage: Stage::Pr }, 20004);
    let blocked = add_task(&store, p, &TaskState::AwaitingChecks, 20005);
    for task in [open, merged, done, blocked] {
        upsert_pr(&store, &pr_row(task, Some(task.0 as u64), "sha", 1));
    }
    upsert_pr(
        &store,
        &PullRequestRow {
            merged: true,
            ..pr_row(merged, Some(merged.0 as u64), "sha", 1)
        },
    );
    store
        .write(|tx| {
            tx.update_task_state(
                done,
                &TaskState::Done {
                    reason: DoneReason::Merged,
                },
                0,
                0,
                0,
            )?;
            tx.update_task_state(
                blocked,
                &TaskState::Blocked {
                    stage: Stage::Pr,
                    reason: BlockReason::CiFailing {
                        detail: "3 rounds".into(),
                    },
                },
                0,
                0,
                0,
            )
        })
        .unwrap();
    assert_eq!(
        store.read(|tx| tx.tasks_to_follow()).unwrap(),
        [open, blocked]
    );
}

#[test]
fn webhook_deliveries_are_logged_and_only_accepted_ones_are_replays() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    assert!(!store.read(|tx| tx.delivery_seen("d-1")).unwrap());
    store
        .write(|tx| {
            tx.record_delivery(Some("d-1"), "push", None, "rejected: bad signature")?;
            tx.record_delivery(Some("d-2"), "pull_request", Some(p), "ignored: no task")
        })
        .unwrap();
    // Rejected or ignored before: not a replay.
    assert!(!store.read(|tx| tx.delivery_seen("d-1")).unwrap());
    assert!(!store.read(|tx| tx.delivery_seen("d-2")).unwrap());
    store
        .write(|tx| {
            tx.record_delivery(Some("d-1"), "push", Some(p), "accepted")?;
            tx.record_delivery(Some("d-1"), "push", Some(p), "replayed")?;
            tx.record_delivery(None, "ping", None, "accepted")
        })
        .unwrap();
    assert!(store.read(|tx| tx.delivery_seen("d-1")).unwrap());
    assert!(!store.read(|tx| tx.delivery_seen("d-3")).unwrap());

    let entry =
        |d: Option<&str>, e: &str, o: &str| (d.map(String::from), e.to_string(), o.to_string());
    assert_eq!(
        store.read(|tx| tx.recent_deliveries(3)).unwrap(),
        [
            entry(None, "ping", "accepted"),
            entry(Some("d-1"), "push", "replayed"),
            entry(Some("d-1"), "push", "accepted"),
        ]
    );
    assert_eq!(store.read(|tx| tx.recent_deliveries(100)).unwrap().len(), 5);
    assert_eq!(store.read(|tx| tx.recent_deliveries(0)).unwrap(), []);
}

// ---------------------------------------------------------------------------------------------
// One transaction: a state change and its intents, both or neither

/// An error of the caller's own, as the engine has: the rollback must not depend on it being a
/// `StoreError`.
#[derive(Debug)]
enum WriteError {
    Store(StoreError),
    Refused,
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

/// Writes `merging` and its merge intent for `task`, then fails when `fail`.
fn decide(store: &Store, task: TaskId, fail: bool) -> Result<(), WriteError> {
    store.write(|tx| {
        tx.update_task_state(task, &TaskState::Merging, 0, 0, 3)?;
        let inserted = tx.insert_intent(&NewIntent {
            task_id: task,
            kind: IntentKind::MergePr,
            idem_key: "merge_pr:1",
        })?;
        assert!(inserted);
        if fail {
            return Err(WriteError::Refused);
        }
        Ok(())
    })
}

#[test]
fn a_failed_write_leaves_neither_the_state_change_nor_its_intent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let p = add_project(&store, "p").id;
    let awaiting = TaskState::AwaitingMerge { merge_error: None };
    let task = add_task(&store, p, &awaiting, 20001);
    let before = task_row(&store, task);

    let result = decide(&store, task, true);
    assert!(matches!(result, Err(WriteError::Refused)), "{result:?}");
    assert_eq!(task_row(&store, task), before);
    assert_eq!(store.read(|tx| tx.pending_intents()).unwrap(), []);

    // Nor on disk.
    drop(store);
    let store = Store::open_in(dir.path()).unwrap();
    assert_eq!(task_row(&store, task), before);
    assert_eq!(store.read(|tx| tx.intents_of_task(task)).unwrap(), []);

    // A store error reaches the caller through its own error type.
    let result = decide(&store, TaskId(999), false);
    assert!(
        matches!(&result, Err(WriteError::Store(StoreError::Corrupt(m))) if m.contains("999")),
        "{result:?}"
    );

    // A store error inside the closure rolls back the same way: the state written before the
    // failing statement is gone.
    let result = store.write(|tx| {
        tx.update_task_state(task, &TaskState::Merging, 0, 0, 3)?;
        tx.insert_intent(&NewIntent {
            task_id: TaskId(999), // no such task: the foreign key refuses it
            kind: IntentKind::MergePr,
            idem_key: "merge_pr:999",
        })
    });
    assert!(matches!(result, Err(StoreError::Sql(_))), "{result:?}");
    assert_eq!(task_row(&store, task), before);
    assert_eq!(store.read(|tx| tx.pending_intents()).unwrap(), []);
}

#[test]
fn a_successful_write_leaves_both_the_state_change_and_its_intent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let p = add_project(&store, "p").id;
    let task = add_task(
        &store,
        p,
        &TaskState::AwaitingMerge { merge_error: None },
        20001,
    );

    decide(&store, task, false).unwrap();
    drop(store);

    let store = Store::open_in(dir.path()).unwrap();
    let row = task_row(&store, task);
    assert_eq!((row.state, row.runs_started), (TaskState::Merging, 3));
    let pending = store.read(|tx| tx.pending_intents()).unwrap();
    assert_eq!(
        pending,
        [Intent {
            id: pending[0].id,
            task_id: task,
            kind: Ok(IntentKind::MergePr),
            idem_key: "merge_pr:1".into(),
            attempts: 0,
            done_at: None,
            outcome: None,
        }]
    );
}

/// A caller's bug that panics halfway through a write.
fn bug() -> Result<(), StoreError> {
    panic!("a bug in the caller")
}

#[test]
fn a_write_that_panics_leaves_nothing_and_the_store_stays_usable() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let awaiting = TaskState::AwaitingMerge { merge_error: None };
    let task = add_task(&store, p, &awaiting, 20001);
    let before = task_row(&store, task);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.write(|tx| {
            tx.update_task_state(task, &TaskState::Merging, 0, 0, 3)?;
            tx.insert_intent(&NewIntent {
                task_id: task,
                kind: IntentKind::MergePr,
                idem_key: "merge_pr:1",
            })?;
            bug()
        });
    }));
    assert!(panicked.is_err());

    assert_eq!(task_row(&store, task), before);
    assert_eq!(store.read(|tx| tx.pending_intents()).unwrap(), []);
    decide(&store, task, false).unwrap();
    assert_eq!(task_row(&store, task).state, TaskState::Merging);
}

#[test]
fn pages_of_tasks_and_projects_are_ascending_after_the_cursor_and_limited() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let q = add_project(&store, "q").id;
    let r = add_project(&store, "r").id;
    let state = TaskState::PlanGate;
    let t1 = add_task(&store, p, &state, 1);
    let t2 = add_task(&store, q, &state, 2);
    let t3 = add_task(&store, p, &state, 3);
    let t4 = add_task(&store, p, &state, 4);
    let page = |project, after, limit| -> Vec<TaskId> {
        store
            .read(|tx| tx.tasks_page(project, after, limit, None))
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(page(None, None, 10), [t1, t2, t3, t4]);
    assert_eq!(page(None, None, 2), [t1, t2]);
    assert_eq!(page(None, Some(t2), 2), [t3, t4]);
    assert_eq!(page(None, Some(t4), 2), Vec::<TaskId>::new());
    assert_eq!(page(Some(p), Some(t1), 1), [t3]);
    assert_eq!(page(Some(p), Some(t3), 5), [t4]);
    assert_eq!(page(Some(q), None, 5), [t2]);
    let projects = |after, limit| -> Vec<ProjectId> {
        store
            .read(|tx| tx.projects_page(after, limit, None))
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(projects(None, 2), [p, q]);
    assert_eq!(projects(Some(q), 2), [r]);
    assert_eq!(projects(Some(r), 2), Vec::<ProjectId>::new());
}

#[test]
fn credentials_and_models_are_per_user_and_harness_and_replaced_whole() {
    let (_dir, store) = fresh();
    let (ann, bob) = store
        .write(|tx| {
            Ok::<_, StoreError>((
                tx.insert_user("ann", None, false, true)?,
                tx.insert_user("bob", None, false, true)?,
            ))
        })
        .unwrap();
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    store
        .write(|tx| {
            tx.replace_credentials(ann, "claude-code", &[pair("ANTHROPIC_API_KEY", "sealed:a")])?;
            tx.replace_credentials(ann, "codex", &[pair("OPENAI_API_KEY", "sealed:c")])?;
            tx.replace_credentials(
                bob,
                "claude-code",
                &[pair("CLAUDE_CODE_OAUTH_TOKEN", "sealed:b")],
            )
        })
        .unwrap();
    let names = |user, harness: Option<&str>| -> Vec<(String, String)> {
        store
            .read(|tx| tx.credentials_of(user, harness))
            .unwrap()
            .into_iter()
            .map(|c| (c.harness, c.name))
            .collect()
    };
    assert_eq!(
        names(ann, None),
        [
            pair("claude-code", "ANTHROPIC_API_KEY"),
            pair("codex", "OPENAI_API_KEY")
        ]
    );
    assert_eq!(
        names(bob, Some("claude-code")),
        [pair("claude-code", "CLAUDE_CODE_OAUTH_TOKEN")]
    );
    // Setting a harness again replaces all of its variables.
    store
        .write(|tx| {
            tx.replace_credentials(
                ann,
                "claude-code",
                &[pair("CLAUDE_CODE_OAUTH_TOKEN", "sealed:x")],
            )
        })
        .unwrap();
    assert_eq!(
        names(ann, Some("claude-code")),
        [pair("claude-code", "CLAUDE_CODE_OAUTH_TOKEN")]
    );
    assert_eq!(
        store
            .write(|tx| tx.delete_credentials(ann, "codex"))
            .unwrap(),
        1
    );
    assert_eq!(names(ann, Some("codex")), Vec::<(String, String)>::new());
    assert_eq!(names(bob, None).len(), 1, "another user's are untouched");

    store
        .write(|tx| {
            tx.set_user_model(ann, Stage::Plan, Some(("opus", Some("high"))))?;
            tx.set_user_model(ann, Stage::Plan, Some(("haiku", None)))?;
            tx.set_user_model(ann, Stage::Review, Some(("sonnet", None)))?;
            tx.set_user_model(ann, Stage::Review, None)
        })
        .unwrap();
    let models = store.read(|tx| tx.user_models(ann)).unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(
        (
            models[0].stage,
            models[0].model.as_str(),
            models[0].effort.as_deref()
        ),
        (Stage::Plan, "haiku", None)
    );
    assert!(store.read(|tx| tx.user_models(bob)).unwrap().is_empty());
}

#[test]
fn the_guards_facts_are_recorded_on_runs_and_flags_counted_in_a_row() {
    let (_dir, store) = fresh();
    let p = add_project(&store, "p").id;
    let task = add_task(
        &store,
        p,
        &TaskState::Running {
            stage: Stage::Implement,
        },
        20100,
    );
    let first = add_run(&store, task, Stage::Implement);
    store
        .write(|tx| tx.set_run_start(first, Some("abc"), 2))
        .unwrap();
    // A resumed turn of the same run keeps what its first turn found.
    store
        .write(|tx| tx.set_run_start(first, Some("def"), 5))
        .unwrap();
    let row = run_row(&store, first);
    assert_eq!(
        (row.start_head.as_deref(), row.start_checked),
        (Some("abc"), Some(2))
    );
    let continued = add_run(&store, task, Stage::Implement);
    store
        .write(|tx| tx.inherit_run_start(continued, first))
        .unwrap();
    let row = run_row(&store, continued);
    assert_eq!(
        (row.start_head.as_deref(), row.start_checked),
        (Some("abc"), Some(2))
    );
    finish(&store, first, RunStatus::Interrupted);

    store
        .write(|tx| {
            tx.mark_run_no_progress(continued)?;
            tx.mark_run_looping(continued)
        })
        .unwrap();
    finish(&store, continued, RunStatus::Completed);
    let count = |f: fn(&store::Tx<'_>, TaskId) -> Result<u32, StoreError>| {
        store.read(|tx| f(tx, task)).unwrap()
    };
    assert_eq!(count(|tx, t| tx.consecutive_no_progress(t)), 1);
    assert_eq!(count(|tx, t| tx.consecutive_looping(t)), 1);
    let review = add_run(&store, task, Stage::Review);
    store
        .write(|tx| tx.set_reviewed_commit(review, "abc"))
        .unwrap();
    finish(&store, review, RunStatus::Completed);
    assert_eq!(
        run_row(&store, review).reviewed_commit.as_deref(),
        Some("abc")
    );
    // A run without the flag ends the row.
    assert_eq!(count(|tx, t| tx.consecutive_no_progress(t)), 0);
    assert_eq!(count(|tx, t| tx.consecutive_looping(t)), 0);
}

/// A deferred write of events, recording what became of it.
struct Events {
    task: TaskId,
    run: RunId,
    rows: Vec<(i64, String)>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl store::DeferredWrite for Events {
    fn write(&mut self, tx: &store::Tx<'_>) -> Result<(), StoreError> {
        tx.append_events(self.task, self.run, &self.rows)
    }
    fn committed(self: Box<Self>) {
        let first = self.rows.first().map_or(0, |(seq, _)| *seq);
        self.log
            .lock()
            .unwrap()
            .push(format!("committed {} {first}", self.run));
    }
    fn failed(self: Box<Self>, _err: &StoreError) {
        let first = self.rows.first().map_or(0, |(seq, _)| *seq);
        self.log
            .lock()
            .unwrap()
            .push(format!("failed {} {first}", self.run));
    }
}

fn seqs(store: &Store, task: TaskId) -> Vec<(RunId, i64)> {
    store
        .read(|tx| tx.task_events_after(task, (RunId(0), 0), 100))
        .unwrap()
        .into_iter()
        .map(|e| (e.run, e.seq))
        .collect()
}

#[test]
fn deferred_writes_of_many_runs_commit_together_in_order_before_anything_else() {
    let (_dir, store) = fresh();
    let project = add_project(&store, "p");
    let task = add_task(
        &store,
        project.id,
        &TaskState::Stopped { stage: Stage::Plan },
        20000,
    );
    let (a, b) = (
        add_run(&store, task, Stage::Plan),
        add_run(&store, task, Stage::Implement),
    );
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let event = |seq: i64| (seq, format!(r#"{{"type":"message","text":"{seq}"}}"#));
    let defer = |run: RunId, seqs: std::ops::Range<i64>| {
        store.defer(Box::new(Events {
            task,
            run,
            rows: seqs.map(event).collect(),
            log: log.clone(),
        }))
    };
    assert_eq!(defer(a, 1..3), 1);
    assert_eq!(defer(b, 1..2), 2);
    assert_eq!(defer(a, 3..4), 3);
    // Nothing is committed yet: a plain connection sees no event.
    let count = |conn: &Connection| -> i64 {
        conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap()
    };
    let plain = raw(_dir.path());
    assert_eq!(count(&plain), 0);
    // A read through the store commits them first, in one transaction, in order.
    assert_eq!(seqs(&store, task), vec![(a, 1), (a, 2), (a, 3), (b, 1)]);
    assert_eq!(count(&plain), 4);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            format!("committed {a} 1"),
            format!("committed {b} 1"),
            format!("committed {a} 3"),
        ]
    );
    // A duplicate key fails alone (told at once); the writes around it are stored.
    log.lock().unwrap().clear();
    defer(b, 2..3);
    defer(a, 3..4);
    defer(b, 3..4);
    store.commit_deferred();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            format!("failed {a} 3"),
            format!("committed {b} 2"),
            format!("committed {b} 3"),
        ]
    );
    assert_eq!(
        seqs(&store, task),
        vec![(a, 1), (a, 2), (a, 3), (b, 1), (b, 2), (b, 3)]
    );
    // One activity row per stored write, none for the failed one.
    let batches: i64 = plain
        .query_row(
            "SELECT COUNT(*) FROM activity WHERE kind = 'transcript'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(batches, 5);
    // What a store closing with writes deferred holds is committed.
    defer(b, 4..5);
    drop(store);
    assert_eq!(count(&plain), 7);
}
