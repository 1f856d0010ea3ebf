//! Embedded schema migrations, applied in order and tracked with `PRAGMA user_version`.

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL UNIQUE,
    default_branch TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    branch TEXT NOT NULL,
    base TEXT NOT NULL,
    state TEXT NOT NULL,
    state_name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    technical INTEGER NOT NULL,
    worktree TEXT,
    doc_path TEXT NOT NULL,
    port INTEGER NOT NULL,
    review_rounds INTEGER NOT NULL DEFAULT 0,
    runs_started INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX tasks_state ON tasks(state_name);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    session TEXT,
    token_hash TEXT UNIQUE,
    mark TEXT NOT NULL,
    pending_input TEXT,
    signal TEXT,
    reason TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    spawned_us INTEGER,
    exited_us INTEGER,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX runs_task ON runs(task_id, id);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE events (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_task ON events(task_id, run_id, seq);
CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    task_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    kind TEXT NOT NULL,
    idem_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at INTEGER,
    outcome TEXT
);
CREATE TABLE pull_requests (
    task_id INTEGER PRIMARY KEY REFERENCES tasks(id),
    url TEXT NOT NULL,
    branch TEXT NOT NULL,
    base TEXT NOT NULL,
    remote TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    merged INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
"#,
    // 2: infrastructure failures (retried with backoff) are told apart from agent failures.
    "ALTER TABLE runs ADD COLUMN infra INTEGER NOT NULL DEFAULT 0;",
    // 3: runs that stalled (the first stall of a stretch is resumed once).
    "ALTER TABLE runs ADD COLUMN stalled INTEGER NOT NULL DEFAULT 0;",
    // 4: task ids come from a counter that only grows, so a crash between making a task's
    // folders and writing its row can never hand the same id (and folder names) out again.
    r#"
CREATE TABLE task_ids (last INTEGER NOT NULL);
INSERT INTO task_ids (last) SELECT COALESCE(MAX(id), 0) FROM tasks;
"#,
    // 5: a hosted forge's number for the pull request (GitHub's PR number).
    "ALTER TABLE pull_requests ADD COLUMN number INTEGER;",
    // 6: following a pull request up: its follow-up rounds, what a follow-up run is for, the
    // comments seen on it, and the webhook deliveries received.
    r#"
ALTER TABLE tasks ADD COLUMN ci_fix_rounds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN conflict_rounds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN brief TEXT;
CREATE TABLE pr_comments (
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    kind TEXT NOT NULL,
    comment_id INTEGER NOT NULL,
    author TEXT NOT NULL,
    association TEXT NOT NULL,
    body TEXT NOT NULL,
    path TEXT,
    line INTEGER,
    url TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    run_id INTEGER,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    replied INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, kind, comment_id)
);
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    delivery TEXT,
    event TEXT NOT NULL,
    project_id INTEGER,
    outcome TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_id ON webhook_deliveries(delivery);
"#,
    // 7: the activity stream the live stream (Server-Sent Events) follows: one row per change a
    // user can watch, written with the change; transcript events are pointed at by one row per
    // stored batch. Existing transcripts become one row per run.
    r#"
CREATE TABLE activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    run_id INTEGER,
    seq_from INTEGER,
    seq_to INTEGER,
    created_us INTEGER NOT NULL
);
CREATE INDEX activity_task ON activity(task_id, id);
INSERT INTO activity (task_id, kind, payload, run_id, seq_from, seq_to, created_us)
    SELECT task_id, 'transcript', '{}', run_id, MIN(seq), MAX(seq), MAX(created_at) * 1000
    FROM events GROUP BY run_id ORDER BY run_id;
"#,
    // 8: people. Accounts with argon2id password hashes, their API tokens and browser sessions
    // (both stored as SHA-256 hashes only), project membership, the audit trail, and who owns
    // each task.
    r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    admin INTEGER NOT NULL DEFAULT 0,
    technical INTEGER NOT NULL DEFAULT 1,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    hash TEXT NOT NULL UNIQUE,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE memberships (
    project_id INTEGER NOT NULL REFERENCES projects(id),
    user_id INTEGER NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT
);
ALTER TABLE tasks ADD COLUMN owner_id INTEGER REFERENCES users(id);
"#,
    // 9: each user's own agent credentials (sealed by the engine, bound to user, harness and
    // variable name; never stored plain) and their model/effort per stage.
    r#"
CREATE TABLE user_credentials (
    user_id INTEGER NOT NULL REFERENCES users(id),
    harness TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed_value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, harness, name)
) WITHOUT ROWID;
CREATE TABLE user_models (
    user_id INTEGER NOT NULL REFERENCES users(id),
    stage TEXT NOT NULL,
    model TEXT NOT NULL,
    effort TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, stage)
) WITHOUT ROWID;
"#,
    // 10: the harness and the model each run actually used (after the owner's own model for
    // the stage); null for runs recorded before.
    r#"
ALTER TABLE runs ADD COLUMN harness TEXT;
ALTER TABLE runs ADD COLUMN model TEXT;
"#,
    // 11: the guards. What an implement run started from (the worktree's HEAD and the doc's
    // checked to-do items), so its end can be compared; the commit a review verdict was given
    // on; and the runs a guard cut short (no progress, a looping agent), counted in a row like
    // stalls.
    r#"
ALTER TABLE runs ADD COLUMN start_head TEXT;
ALTER TABLE runs ADD COLUMN start_checked INTEGER;
ALTER TABLE runs ADD COLUMN reviewed_commit TEXT;
ALTER TABLE runs ADD COLUMN no_progress INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN looping INTEGER NOT NULL DEFAULT 0;
"#,
    // 12: the pipeline each task runs, by name; tasks created before ran the standard one.
    "ALTER TABLE tasks ADD COLUMN pipeline TEXT NOT NULL DEFAULT 'standard';",
    // 13: QA rounds (like review rounds), and the definition of a pipeline that is not built in
    // (a project's own), kept as the task was created with it, with its prompt files' texts.
    r#"
ALTER TABLE tasks ADD COLUMN qa_rounds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN pipeline_def TEXT;
ALTER TABLE tasks ADD COLUMN pipeline_prompts TEXT;
"#,
    // 14: transcript events appended in arrival order (a rowid table) with one index, by run.
    // Clustered by run (`WITHOUT ROWID`, key `(run_id, seq)`) and indexed by task, every commit
    // of many runs' events rewrote a leaf page per live run in the table and another in the task
    // index: at 100 agents × 100 events/s most of the server's CPU went to writing those pages
    // to the WAL. Appended by rowid, a commit's events share the table's tail pages, and the
    // small `(run_id, seq)` index entries are the only per-run pages. A task's events are read
    // through its runs (`runs_task`).
    r#"
CREATE TABLE events_appended (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO events_appended (run_id, seq, task_id, body, created_at)
    SELECT run_id, seq, task_id, body, created_at FROM events ORDER BY run_id, seq;
DROP TABLE events;
ALTER TABLE events_appended RENAME TO events;
CREATE UNIQUE INDEX events_run ON events(run_id, seq);
"#,
    // 15: the checks (CI) last read for each task's pull request, shown without asking the forge.
    r#"
CREATE TABLE pr_checks (
    task_id INTEGER PRIMARY KEY,
    head_sha TEXT NOT NULL,
    overall TEXT NOT NULL,
    checks TEXT NOT NULL,
    read_at INTEGER NOT NULL
);
"#,
    // 16: the title a pull request was opened with (what the forge shows); earlier ones were
    // opened with their task's title.
    r#"
ALTER TABLE pull_requests ADD COLUMN title TEXT NOT NULL DEFAULT '';
UPDATE pull_requests SET title = (SELECT t.title FROM tasks t WHERE t.id = pull_requests.task_id);
"#,
    // 17: the project's own prompt texts (JSON object: key → text) as the task was created with
    // them, so a change of the project's settings does not reach a task underway.
    "ALTER TABLE tasks ADD COLUMN project_prompts TEXT;",
];

pub(crate) fn apply(conn: &mut Connection, path: &Path) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, apply};
    use rusqlite::Connection;
    use std::path::Path;

    /// The frozen copy of schema version 1 the upgrade test (`tests/store.rs`) builds an old
    /// database from must stay what migration 1 creates.
    #[test]
    fn the_frozen_version_1_schema_is_migration_1() {
        let frozen: String = include_str!("../tests/schema_v1.sql")
            .lines()
            .filter(|line| !line.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(frozen.trim(), MIGRATIONS[0].trim());
    }

    #[test]
    fn applying_twice_changes_nothing_the_second_time() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, Path::new(":memory:")).unwrap();
        let version = |conn: &Connection| -> i64 {
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
        // Every migration already applied: nothing runs again (re-running one would fail on
        // its CREATE TABLE / ADD COLUMN).
        apply(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
    }
}
